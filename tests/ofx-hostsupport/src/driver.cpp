// A small OpenFX host on the OpenFX association's HostSupport library, for Soragen's tests.
//
// HostSupport does the OpenFX side (plugin cache and binary loading, property sets, suites,
// actions); this file fills in what it leaves to a host: the host description, effect, clip,
// image and parameter instances, messages, progress and abort. Input clips serve synthetic
// frames the test hands over; the output clip renders into a buffer the test reads back.
// The C API at the end (sg_*) is what the Rust side calls.

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <list>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "ofxCore.h"
#include "ofxImageEffect.h"
#include "ofxMessage.h"

// HostSupport's headers rely on this order.
#include "ofxhBinary.h"
#include "ofxhPropertySuite.h"
#include "ofxhClip.h"
#include "ofxhParam.h"
#include "ofxhMemory.h"
#include "ofxhImageEffect.h"
#include "ofxhPluginAPICache.h"
#include "ofxhPluginCache.h"
#include "ofxhHost.h"
#include "ofxhImageEffectAPI.h"

#define SG_API extern "C" __attribute__((visibility("default")))

namespace sg {

using namespace OFX::Host;

// The GPU render properties of OpenFX 1.5 (ofxGPURender.h). A host built on a HostSupport that
// predates them, or from one that defines them only with OFX_SUPPORTS_OPENGLRENDER (the current
// upstream library, and Natron's), has none of them: the profile "no GPU properties" removes them
// from every property set this host makes, so that the plugin meets kOfxStatErrUnknown.
static const char *const kGpuProps[] = {
    "OfxImageEffectPropCudaRenderSupported", "OfxImageEffectPropCudaStreamSupported",
    "OfxImageEffectPropMetalRenderSupported", "OfxImageEffectPropOpenCLRenderSupported", 0};

// Property::Set keeps its map protected; a member pointer named through a derived class reaches
// it on any Set without touching HostSupport.
struct SetAccess : Property::Set {
  static Property::PropertyMap &props(Property::Set &set) {
    Property::PropertyMap Property::Set::*member = &SetAccess::_props;
    return set.*member;
  }
};

static void removeGpuProps(Property::Set &set) {
  Property::PropertyMap &props = SetAccess::props(set);
  for (int i = 0; kGpuProps[i]; ++i) {
    Property::PropertyMap::iterator it = props.find(kGpuProps[i]);
    if (it != props.end()) {
      delete it->second;
      props.erase(it);
    }
  }
}

static std::string vformat(const char *format, va_list args) {
  if (!format) return std::string();
  va_list copy;
  va_copy(copy, args);
  char small[512];
  int n = vsnprintf(small, sizeof small, format, copy);
  va_end(copy);
  if (n < 0) return std::string();
  if (n < (int)sizeof small) return std::string(small, n);
  std::vector<char> big(n + 1);
  vsnprintf(&big[0], big.size(), format, args);
  return std::string(&big[0], n);
}

struct Frames {
  double first;
  int count;
  std::vector<unsigned char> data;  // count frames, bottom row first
};

class EffectInstance;

// ---------------------------------------------------------------------------------------- host

class Host : public ImageEffect::Host {
 public:
  bool stripGpu;
  std::vector<std::string> messages;  // messages without an instance

  explicit Host(bool strip) : stripGpu(strip) {
    _properties.setStringProperty(kOfxPropName, "org.soragen.tests.HostSupport");
    _properties.setStringProperty(kOfxPropLabel, "Soragen test host (OpenFX HostSupport)");
    _properties.setIntProperty(kOfxPropAPIVersion, 1, 0);
    _properties.setIntProperty(kOfxPropAPIVersion, 4, 1);
    _properties.setIntProperty(kOfxPropVersion, 1, 0);
    _properties.setStringProperty(kOfxPropVersionLabel, "1.0");
    _properties.setIntProperty(kOfxImageEffectHostPropIsBackground, 1);
    _properties.setIntProperty(kOfxImageEffectPropSupportsOverlays, 0);
    _properties.setIntProperty(kOfxImageEffectPropSupportsMultiResolution, 0);
    _properties.setIntProperty(kOfxImageEffectPropSupportsTiles, 1);
    _properties.setIntProperty(kOfxImageEffectPropTemporalClipAccess, 1);
    const char *components[] = {kOfxImageComponentRGBA, kOfxImageComponentAlpha};
    for (int i = 0; i < 2; ++i) _properties.setStringProperty(kOfxImageEffectPropSupportedComponents, components[i], i);
    const char *depths[] = {kOfxBitDepthFloat, kOfxBitDepthByte};
    for (int i = 0; i < 2; ++i) _properties.setStringProperty(kOfxImageEffectPropSupportedPixelDepths, depths[i], i);
    const char *contexts[] = {kOfxImageEffectContextGenerator, kOfxImageEffectContextFilter,
                              kOfxImageEffectContextGeneral, kOfxImageEffectContextTransition};
    for (int i = 0; i < 4; ++i) _properties.setStringProperty(kOfxImageEffectPropSupportedContexts, contexts[i], i);
    _properties.setIntProperty(kOfxImageEffectPropSupportsMultipleClipDepths, 0);
    _properties.setIntProperty(kOfxImageEffectPropSupportsMultipleClipPARs, 0);
    _properties.setIntProperty(kOfxParamHostPropMaxParameters, -1);
    _properties.setIntProperty(kOfxParamHostPropMaxPages, 0);
    if (stripGpu) removeGpuProps(_properties);
  }

  ImageEffect::Instance *newInstance(void *clientData, ImageEffect::ImageEffectPlugin *plugin,
                                     ImageEffect::Descriptor &desc, const std::string &context);

  ImageEffect::Descriptor *strip(ImageEffect::Descriptor *desc) {
    if (stripGpu) removeGpuProps(desc->getProps());
    return desc;
  }
  ImageEffect::Descriptor *makeDescriptor(ImageEffect::ImageEffectPlugin *plugin) {
    return strip(new ImageEffect::Descriptor(plugin));
  }
  ImageEffect::Descriptor *makeDescriptor(const ImageEffect::Descriptor &root, ImageEffect::ImageEffectPlugin *plugin) {
    return strip(new ImageEffect::Descriptor(root, plugin));
  }
  ImageEffect::Descriptor *makeDescriptor(const std::string &bundlePath, ImageEffect::ImageEffectPlugin *plugin) {
    return strip(new ImageEffect::Descriptor(bundlePath, plugin));
  }

  OfxStatus vmessage(const char *type, const char *, const char *format, va_list args) {
    messages.push_back(std::string(type ? type : "") + " " + vformat(format, args));
    return kOfxStatOK;
  }
  OfxStatus setPersistentMessage(const char *type, const char *id, const char *format, va_list args) {
    return vmessage(type, id, format, args);
  }
  OfxStatus clearPersistentMessage() { return kOfxStatOK; }

#ifdef OFX_SUPPORTS_OPENGLRENDER
  OfxStatus flushOpenGLResources() const { return kOfxStatOK; }
#endif
};

// ------------------------------------------------------------------------------------- images

struct Counters {
  int lent = 0;
  int released = 0;
};

class Image : public ImageEffect::Image {
  Counters *_counters;
  std::vector<unsigned char> _own;

 public:
  Image(ImageEffect::ClipInstance &clip, Counters *counters, void *data, std::vector<unsigned char> own,
        const OfxRectI &bounds, int rowBytes, const std::string &uid)
      : ImageEffect::Image(clip, 1.0, 1.0, data, bounds, bounds, rowBytes, kOfxImageFieldNone, uid),
        _counters(counters),
        _own(std::move(own)) {
    if (!_own.empty()) setPointerProperty(kOfxImagePropData, &_own[0]);
    _counters->lent++;
  }
  ~Image() { _counters->released++; }
};

// -------------------------------------------------------------------------------------- clips

class Clip : public ImageEffect::ClipInstance {
  EffectInstance *_effect;

 public:
  Clip(EffectInstance *effect, ImageEffect::ClipDescriptor &desc);
  const std::string &getUnmappedBitDepth() const;
  const std::string &getUnmappedComponents() const;
  const std::string &getPremult() const {
    static const std::string v(kOfxImageUnPreMultiplied);
    return v;
  }
  double getAspectRatio() const { return 1.0; }
  double getFrameRate() const { return 25.0; }
  void getFrameRange(double &first, double &last) const;
  const std::string &getFieldOrder() const {
    static const std::string v(kOfxImageFieldNone);
    return v;
  }
  bool getConnected() const;
  double getUnmappedFrameRate() const { return 25.0; }
  void getUnmappedFrameRange(double &first, double &last) const { getFrameRange(first, last); }
  bool getContinuousSamples() const { return false; }
  ImageEffect::Image *getImage(OfxTime time, const OfxRectD *bounds);
#ifdef OFX_SUPPORTS_OPENGLRENDER
  ImageEffect::Texture *loadTexture(OfxTime, const char *, const OfxRectD *) { return 0; }
#endif
  OfxRectD getRegionOfDefinition(OfxTime time) const;
};

// --------------------------------------------------------------------------------- parameters

template <class Base, class T>
class ValueParam : public Base {
 protected:
  T _value;

 public:
  ValueParam(Param::SetInstance *set, Param::Descriptor &desc, T value) : Base(desc, set), _value(value) {}
  OfxStatus get(T &v) {
    v = _value;
    return kOfxStatOK;
  }
  OfxStatus get(OfxTime, T &v) { return get(v); }
  OfxStatus set(T v) {
    _value = v;
    return kOfxStatOK;
  }
  OfxStatus set(OfxTime, T v) { return set(v); }
};

class IntParam : public ValueParam<Param::IntegerInstance, int> {
 public:
  IntParam(Param::SetInstance *e, Param::Descriptor &d)
      : ValueParam<Param::IntegerInstance, int>(e, d, d.getProperties().getIntProperty(kOfxParamPropDefault)) {}
};

class ChoiceParam : public ValueParam<Param::ChoiceInstance, int> {
 public:
  ChoiceParam(Param::SetInstance *e, Param::Descriptor &d)
      : ValueParam<Param::ChoiceInstance, int>(e, d, d.getProperties().getIntProperty(kOfxParamPropDefault)) {}
};

class BoolParam : public ValueParam<Param::BooleanInstance, bool> {
 public:
  BoolParam(Param::SetInstance *e, Param::Descriptor &d)
      : ValueParam<Param::BooleanInstance, bool>(e, d, d.getProperties().getIntProperty(kOfxParamPropDefault) != 0) {}
};

class DoubleParam : public ValueParam<Param::DoubleInstance, double> {
 public:
  DoubleParam(Param::SetInstance *e, Param::Descriptor &d)
      : ValueParam<Param::DoubleInstance, double>(e, d, d.getProperties().getDoubleProperty(kOfxParamPropDefault)) {}
  OfxStatus derive(OfxTime, double &v) {
    v = 0;
    return kOfxStatOK;
  }
  OfxStatus integrate(OfxTime t1, OfxTime t2, double &v) {
    v = _value * (t2 - t1);
    return kOfxStatOK;
  }
};

class StringParam : public Param::StringInstance {
  std::string _value;

 public:
  StringParam(Param::SetInstance *set, Param::Descriptor &d)
      : Param::StringInstance(d, set), _value(d.getProperties().getStringProperty(kOfxParamPropDefault)) {}
  OfxStatus get(std::string &v) {
    v = _value;
    return kOfxStatOK;
  }
  OfxStatus get(OfxTime, std::string &v) { return get(v); }
  OfxStatus set(const char *v) {
    _value = v ? v : "";
    return kOfxStatOK;
  }
  OfxStatus set(OfxTime, const char *v) { return set(v); }
};

// ------------------------------------------------------------------------------------ effects

class EffectInstance : public ImageEffect::Instance {
 public:
  // What the test sets up.
  int width = 32, height = 32;
  std::string depth = kOfxBitDepthFloat;
  std::map<std::string, Frames> inputs;
  double outFirst = 0, outLast = 0;
  double duration = 1;
  // What the host saw.
  Counters counters;
  std::vector<std::string> messages;
  std::string persistent;
  std::vector<std::string> fetched;  // "clip time"
  int progressStarts = 0, progressUpdates = 0, progressEnds = 0;
  int abortFlag = 0;
  int cancelAfter = -1;  // progressUpdate answers "stop" from this many updates on
  double time = 0;
  std::vector<unsigned char> output;
  std::string text;  // the last string handed to the C API

  EffectInstance(ImageEffect::ImageEffectPlugin *plugin, ImageEffect::Descriptor &desc, const std::string &context, bool stripGpu)
      : ImageEffect::Instance(plugin, desc, context, false) {
    if (stripGpu) removeGpuProps(_properties);
  }

  int bytesPerPixel() const { return depth == kOfxBitDepthFloat ? 16 : 4; }
  size_t frameBytes() const { return (size_t)width * height * bytesPerPixel(); }

  const std::string &getDefaultOutputFielding() const {
    static const std::string v(kOfxImageFieldNone);
    return v;
  }
  ImageEffect::ClipInstance *newClipInstance(ImageEffect::Instance *, ImageEffect::ClipDescriptor *desc, int) {
    return new Clip(this, *desc);
  }

  OfxStatus vmessage(const char *type, const char *, const char *format, va_list args) {
    messages.push_back(std::string(type ? type : "") + " " + vformat(format, args));
    return type && !strcmp(type, kOfxMessageQuestion) ? kOfxStatReplyYes : kOfxStatOK;
  }
  OfxStatus setPersistentMessage(const char *type, const char *, const char *format, va_list args) {
    persistent = std::string(type ? type : "") + " " + vformat(format, args);
    return kOfxStatOK;
  }
  OfxStatus clearPersistentMessage() {
    persistent.clear();
    return kOfxStatOK;
  }

  void getProjectSize(double &x, double &y) const {
    x = width;
    y = height;
  }
  void getProjectOffset(double &x, double &y) const { x = y = 0; }
  void getProjectExtent(double &x, double &y) const { getProjectSize(x, y); }
  double getProjectPixelAspectRatio() const { return 1.0; }
  double getEffectDuration() const { return duration; }
  double getFrameRate() const { return 25.0; }
  double getFrameRecursive() const { return time; }
  void getRenderScaleRecursive(double &x, double &y) const { x = y = 1.0; }

  Param::Instance *newParam(const std::string &, Param::Descriptor &desc) {
    const std::string &type = desc.getType();
    if (type == kOfxParamTypeInteger) return new IntParam(this, desc);
    if (type == kOfxParamTypeChoice) return new ChoiceParam(this, desc);
    if (type == kOfxParamTypeBoolean) return new BoolParam(this, desc);
    if (type == kOfxParamTypeDouble) return new DoubleParam(this, desc);
    if (type == kOfxParamTypeString) return new StringParam(this, desc);
    if (type == kOfxParamTypeGroup) return new Param::GroupInstance(desc, this);
    if (type == kOfxParamTypePage) return new Param::PageInstance(desc, this);
    if (type == kOfxParamTypePushButton) return new Param::PushbuttonInstance(desc, this);
    messages.push_back(std::string("host: no parameter of type ") + type);
    return 0;
  }
  OfxStatus editBegin(const std::string &) { return kOfxStatOK; }
  OfxStatus editEnd() { return kOfxStatOK; }

  // Progress (OfxProgressSuite) and abort (OfxImageEffectSuite::abort), as HostSupport routes them.
  void progressStart(const std::string &, const std::string &) { progressStarts++; }
  void progressEnd() { progressEnds++; }
  bool progressUpdate(double) {
    progressUpdates++;
    return !(cancelAfter >= 0 && progressUpdates >= cancelAfter);
  }
  int abort() { return abortFlag; }

  double timeLineGetTime() { return time; }
  void timeLineGotoTime(double t) { time = t; }
  void timeLineGetBounds(double &t1, double &t2) {
    t1 = outFirst;
    t2 = outLast;
  }
};

Clip::Clip(EffectInstance *effect, ImageEffect::ClipDescriptor &desc) : ImageEffect::ClipInstance(effect, desc), _effect(effect) {}

bool Clip::getConnected() const { return isOutput() || _effect->inputs.count(getName()) != 0; }

const std::string &Clip::getUnmappedBitDepth() const {
  static const std::string none(kOfxBitDepthNone);
  return getConnected() ? _effect->depth : none;
}

const std::string &Clip::getUnmappedComponents() const {
  static const std::string rgba(kOfxImageComponentRGBA), none(kOfxImageComponentNone);
  return getConnected() ? rgba : none;
}

void Clip::getFrameRange(double &first, double &last) const {
  if (isOutput()) {
    first = _effect->outFirst;
    last = _effect->outLast;
    return;
  }
  std::map<std::string, Frames>::const_iterator it = _effect->inputs.find(getName());
  if (it == _effect->inputs.end()) {
    first = last = 0;
  } else {
    first = it->second.first;
    last = it->second.first + it->second.count - 1;
  }
}

OfxRectD Clip::getRegionOfDefinition(OfxTime) const {
  OfxRectD rod = {0, 0, (double)_effect->width, (double)_effect->height};
  return rod;
}

ImageEffect::Image *Clip::getImage(OfxTime time, const OfxRectD *) {
  OfxRectI bounds = {0, 0, _effect->width, _effect->height};
  int rowBytes = _effect->width * _effect->bytesPerPixel();
  std::ostringstream fetch;
  fetch << getName() << " " << time;
  _effect->fetched.push_back(fetch.str());
  if (isOutput()) {
    return new Image(*this, &_effect->counters, &_effect->output[0], std::vector<unsigned char>(), bounds, rowBytes, "output");
  }
  std::map<std::string, Frames>::const_iterator it = _effect->inputs.find(getName());
  if (it == _effect->inputs.end()) return 0;
  const Frames &frames = it->second;
  double index = time - frames.first;
  if (index != std::floor(index) || index < 0 || index >= frames.count) return 0;
  size_t size = _effect->frameBytes();
  std::vector<unsigned char> copy(frames.data.begin() + (size_t)index * size, frames.data.begin() + ((size_t)index + 1) * size);
  return new Image(*this, &_effect->counters, 0, copy, bounds, rowBytes, fetch.str());
}

ImageEffect::Instance *Host::newInstance(void *, ImageEffect::ImageEffectPlugin *plugin, ImageEffect::Descriptor &desc,
                                         const std::string &context) {
  return new EffectInstance(plugin, desc, context, stripGpu);
}

struct Session {
  Host host;
  std::unique_ptr<ImageEffect::PluginCache> cache;
  std::string dir;
  std::string text;
  explicit Session(bool strip) : host(strip) {}
};

}  // namespace sg

using sg::EffectInstance;
using sg::Session;
using namespace OFX::Host;

static EffectInstance *effect(void *p) { return static_cast<EffectInstance *>(p); }

// One record a line: a message's own line breaks become "\\n".
static std::string line(const std::string &text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n') out += "\\n";
    else out += text[i];
  }
  return out;
}

static const char *kept(std::string &slot, const std::string &value) {
  slot = value;
  return slot.c_str();
}

// Loads every plugin in the bundles under `dir` (and HostSupport's default path, which the
// listings below leave out). One per process: HostSupport's plugin cache is a singleton.
SG_API void *sg_load(const char *dir, int stripGpu) {
  try {
    Session *session = new Session(stripGpu != 0);
    session->dir = dir;
    OFX::Host::PluginCache *cache = OFX::Host::PluginCache::getPluginCache();
    cache->setCacheVersion("soragen-tests");
    session->cache.reset(new ImageEffect::PluginCache(session->host));
    session->cache->registerInCache(*cache);
    cache->prependFileToPath(dir);
    cache->scanPluginFiles();
    return session;
  } catch (...) {
    return 0;
  }
}

static bool ours(Session *s, ImageEffect::ImageEffectPlugin *p) {
  return p->getBinary()->getBundlePath().compare(0, s->dir.size(), s->dir) == 0;
}

static const char *kNoHandle =
    "Load or Describe failed: HostSupport holds no plugin handle (it would crash describing a context or "
    "creating an instance, ImageEffectPlugin::getContext dereferences the missing handle)";

// HostSupport (re)runs Load and Describe when it first needs the plugin's handle, and gives none
// when either fails; getContext and createInstance then use the null handle. Asked first, so
// that a failed Describe fails a test instead of crashing the test process.
static bool usable(ImageEffect::ImageEffectPlugin *plugin) { return plugin->getPluginHandle() != 0; }

// Identifiers of the plugins found under the directory, one a line, in the binary's order.
SG_API const char *sg_plugins(void *p) {
  Session *s = static_cast<Session *>(p);
  std::string out;
  const std::vector<ImageEffect::ImageEffectPlugin *> &plugins = s->cache->getPlugins();
  for (size_t i = 0; i < plugins.size(); ++i)
    if (ours(s, plugins[i])) out += plugins[i]->getIdentifier() + "\n";
  return kept(s->text, out);
}

// What HostSupport knows of a plugin: without a context, its main description; with one,
// its clips and parameters as described in that context ("error=..." when that fails).
SG_API const char *sg_describe(void *p, const char *id, const char *context) {
  Session *s = static_cast<Session *>(p);
  std::ostringstream out;
  try {
    ImageEffect::ImageEffectPlugin *plugin = s->cache->getPluginById(id);
    if (!plugin || !ours(s, plugin)) return kept(s->text, "error=no plugin " + std::string(id) + "\n");
    if (!usable(plugin)) return kept(s->text, std::string("error=") + kNoHandle + "\n");
    if (!context) {
      const Property::Set &props = plugin->getDescriptor().getProps();
      out << "label=" << props.getStringProperty(kOfxPropLabel) << "\n";
      out << "grouping=" << props.getStringProperty(kOfxImageEffectPluginPropGrouping) << "\n";
      const std::set<std::string> &contexts = plugin->getContexts();
      for (std::set<std::string>::const_iterator it = contexts.begin(); it != contexts.end(); ++it)
        out << "context=" << *it << "\n";
      for (int i = 0; i < props.getDimension(kOfxImageEffectPropSupportedPixelDepths); ++i)
        out << "depth=" << props.getStringProperty(kOfxImageEffectPropSupportedPixelDepths, i) << "\n";
      out << "temporal=" << props.getIntProperty(kOfxImageEffectPropTemporalClipAccess) << "\n";
      return kept(s->text, out.str());
    }
    ImageEffect::Descriptor *desc = plugin->getContext(context);
    if (!desc) return kept(s->text, "error=describe in context " + std::string(context) + " failed\n");
    const std::vector<ImageEffect::ClipDescriptor *> &clips = desc->getClipsByOrder();
    for (size_t i = 0; i < clips.size(); ++i)
      out << "clip=" << clips[i]->getName() << " optional=" << clips[i]->isOptional() << " mask=" << clips[i]->isMask() << "\n";
    const std::list<Param::Descriptor *> &params = desc->getParamList();
    for (std::list<Param::Descriptor *>::const_iterator it = params.begin(); it != params.end(); ++it)
      out << "param=" << (*it)->getName() << " " << (*it)->getType() << "\n";
    return kept(s->text, out.str());
  } catch (...) {
    return kept(s->text, "error=exception while describing\n");
  }
}

// Messages posted without an instance (e.g. while describing).
SG_API const char *sg_host_messages(void *p) {
  Session *s = static_cast<Session *>(p);
  std::string out;
  for (size_t i = 0; i < s->host.messages.size(); ++i) out += line(s->host.messages[i]) + "\n";
  return kept(s->text, out);
}

// A new instance in a context (null when HostSupport cannot make one: the context was not
// described). Frame size and pixel depth (4: float, 1: byte) are the project's.
SG_API void *sg_instance_new(void *p, const char *id, const char *context, int width, int height, int bytesPerComponent) {
  Session *s = static_cast<Session *>(p);
  try {
    ImageEffect::ImageEffectPlugin *plugin = s->cache->getPluginById(id);
    if (!plugin || !ours(s, plugin) || !usable(plugin)) return 0;
    ImageEffect::Instance *instance = plugin->createInstance(context, 0);
    EffectInstance *e = dynamic_cast<EffectInstance *>(instance);
    if (!e) return 0;
    e->width = width;
    e->height = height;
    e->depth = bytesPerComponent == 1 ? kOfxBitDepthByte : kOfxBitDepthFloat;
    return e;
  } catch (...) {
    return 0;
  }
}

// Frames `first .. first+count-1` of an input clip (copied), `count` frames of the project's
// size and depth, RGBA, bottom row first. The clip reports that range as its frame range.
SG_API int sg_instance_input(void *p, const char *clip, double first, int count, const unsigned char *data, size_t len) {
  EffectInstance *e = effect(p);
  if (len != e->frameBytes() * count) return kOfxStatErrValue;
  sg::Frames frames;
  frames.first = first;
  frames.count = count;
  frames.data.assign(data, data + len);
  e->inputs[clip] = frames;
  return kOfxStatOK;
}

// The output clip's frame range and the effect's duration (kOfxImageEffectInstancePropEffectDuration).
SG_API void sg_instance_timing(void *p, double outFirst, double outLast, double duration) {
  EffectInstance *e = effect(p);
  e->outFirst = outFirst;
  e->outLast = outLast;
  e->duration = duration;
}

// kOfxActionCreateInstance, then the clip preferences.
SG_API int sg_instance_create(void *p) {
  EffectInstance *e = effect(p);
  try {
    OfxStatus st = e->createInstanceAction();
    if (st != kOfxStatOK && st != kOfxStatReplyDefault) return st;
    return e->getClipPreferences() ? kOfxStatOK : kOfxStatFailed;
  } catch (...) {
    return kOfxStatErrUnknown;
  }
}

// Sets a parameter as a user would: the value, then the instance-changed actions.
static int changed(EffectInstance *e, const char *name) {
  OfxPointD scale = {1.0, 1.0};
  e->beginInstanceChangedAction(kOfxChangeUserEdited);
  OfxStatus st = e->paramInstanceChangedAction(name, kOfxChangeUserEdited, e->time, scale);
  e->endInstanceChangedAction(kOfxChangeUserEdited);
  e->runGetClipPrefsConditionally();
  return st == kOfxStatReplyDefault ? kOfxStatOK : st;
}

template <class P, class T>
static int setParam(void *p, const char *name, T value) {
  EffectInstance *e = effect(p);
  try {
    P *param = dynamic_cast<P *>(e->getParam(name));
    if (!param) return kOfxStatErrUnknown;
    OfxStatus st = param->set(value);
    if (st != kOfxStatOK) return st;
    return changed(e, name);
  } catch (...) {
    return kOfxStatErrUnknown;
  }
}

SG_API int sg_param_int(void *p, const char *name, int value) {
  if (dynamic_cast<Param::ChoiceInstance *>(effect(p)->getParam(name))) return setParam<Param::ChoiceInstance>(p, name, value);
  return setParam<Param::IntegerInstance>(p, name, value);
}
SG_API int sg_param_double(void *p, const char *name, double value) { return setParam<Param::DoubleInstance>(p, name, value); }
SG_API int sg_param_bool(void *p, const char *name, int value) { return setParam<Param::BooleanInstance>(p, name, value != 0); }
SG_API int sg_param_string(void *p, const char *name, const char *value) { return setParam<Param::StringInstance>(p, name, value); }

// kOfxImageEffectActionGetTimeDomain.
SG_API int sg_time_domain(void *p, double *first, double *last) {
  EffectInstance *e = effect(p);
  try {
    OfxRangeD range = {0, 0};
    OfxStatus st = e->getTimeDomainAction(range);
    *first = range.min;
    *last = range.max;
    return st;
  } catch (...) {
    return kOfxStatErrUnknown;
  }
}

// kOfxImageEffectActionGetFramesNeeded at `time`; `*ranges` gets "clip first last[ first last...]" lines.
SG_API int sg_frames_needed(void *p, double time, const char **ranges) {
  EffectInstance *e = effect(p);
  try {
    ImageEffect::RangeMap map;
    OfxStatus st = e->getFrameNeededAction(time, map);
    std::ostringstream out;
    for (ImageEffect::RangeMap::iterator it = map.begin(); it != map.end(); ++it) {
      out << it->first->getName();
      for (size_t i = 0; i < it->second.size(); ++i) out << " " << it->second[i].min << " " << it->second[i].max;
      out << "\n";
    }
    *ranges = kept(e->text, out.str());
    return st;
  } catch (...) {
    *ranges = "";
    return kOfxStatErrUnknown;
  }
}

// One frame as a host renders it: begin sequence, regions of interest, render, end sequence.
// The output lands in `out` (the whole frame, project size and depth).
SG_API int sg_render(void *p, double time, unsigned char *out, size_t len) {
  EffectInstance *e = effect(p);
  if (len != e->frameBytes()) return kOfxStatErrValue;
  try {
    e->time = time;
    e->runGetClipPrefsConditionally();
    e->output.assign(len, 0);
    OfxPointD scale = {1.0, 1.0};
    OfxRectI window = {0, 0, e->width, e->height};
    OfxRectD roi = {0, 0, (double)e->width, (double)e->height};
    OfxStatus st = e->beginRenderAction(time, time, 1.0, false, scale, true, false);
    if (st != kOfxStatOK && st != kOfxStatReplyDefault) return st;
    std::map<ImageEffect::ClipInstance *, OfxRectD> rois;
    e->getRegionOfInterestAction(time, scale, roi, rois);
    st = e->renderAction(time, kOfxImageFieldNone, window, scale, true, false, false);
    e->endRenderAction(time, time, 1.0, false, scale, true, false);
    memcpy(out, &e->output[0], len);
    return st;
  } catch (...) {
    return kOfxStatErrUnknown;
  }
}

// Abort (the image effect suite's abort()) and cancel (progressUpdate answers stop from the
// n-th update on; negative: never).
SG_API void sg_instance_stop(void *p, int abort, int cancelAfter) {
  effect(p)->abortFlag = abort;
  effect(p)->cancelAfter = cancelAfter;
}

// What the instance saw, "key=value" lines: counters, the persistent message, every message
// and every image fetched.
SG_API const char *sg_instance_log(void *p) {
  EffectInstance *e = effect(p);
  std::ostringstream out;
  out << "lent=" << e->counters.lent << "\nreleased=" << e->counters.released << "\n";
  out << "progress_starts=" << e->progressStarts << "\nprogress_updates=" << e->progressUpdates
      << "\nprogress_ends=" << e->progressEnds << "\n";
  if (!e->persistent.empty()) out << "persistent=" << line(e->persistent) << "\n";
  for (size_t i = 0; i < e->messages.size(); ++i) out << "message=" << line(e->messages[i]) << "\n";
  for (size_t i = 0; i < e->fetched.size(); ++i) out << "fetched=" << e->fetched[i] << "\n";
  return kept(e->text, out.str());
}

// kOfxActionDestroyInstance (HostSupport calls it when a created instance is deleted).
SG_API void sg_instance_free(void *p) {
  try {
    delete effect(p);
  } catch (...) {
  }
}
